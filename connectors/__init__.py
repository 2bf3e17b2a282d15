"""All input and output: form sources, trackers, mail transports and the store."""
