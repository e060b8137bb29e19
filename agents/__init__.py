"""The pipeline's stages, one module each, named after what they do.

A stage is handed its sinks, tables and limits by app/worker.py and only
processes batches (runtime/pipeline.py runs each as a Faust agent); it never
reads the settings, opens a connection or acknowledges a record.
"""
