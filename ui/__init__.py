"""The Streamlit chat app (run it with ``rag ui``)."""
