"""What a task run leaves for people and CI: HTML report, JUnit, JSON summary."""
