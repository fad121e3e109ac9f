"""The closed set of actions: types, parser, validator, key names and executor."""
