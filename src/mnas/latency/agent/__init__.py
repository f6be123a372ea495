"""The device agent: a small HTTP server that measures models on the device it runs on (server.py, each
measurement in a worker process: worker.py), the client backend a search uses to reach it (remote.py),
what both send over the wire (wire.py) and the checks on a model file that arrives (model_files.py).

Nothing is imported here: the client must not load the server, and a backend only the file checks."""
