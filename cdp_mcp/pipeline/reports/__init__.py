"""The reports a run leaves: facts, timeline, the HTML page, the operations documents."""
