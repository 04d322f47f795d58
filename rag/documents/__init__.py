"""Documents in: the loader per format, OCR, which files a folder holds, chunks, uploads.

Nothing here knows of the store or the models: a file becomes text, sections and chunks.
"""
