"""Evaluations of the model on labelled data: grounding accuracy on ScreenSpot-format sets."""
