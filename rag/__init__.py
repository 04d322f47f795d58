"""Local, private question answering over your own documents."""
