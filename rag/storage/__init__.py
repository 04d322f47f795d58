"""The store: the Chroma collection (embedded or a server), its derived keyword index, locks.

Nothing outside this package touches Chroma, its client, the lock or the index.
"""
