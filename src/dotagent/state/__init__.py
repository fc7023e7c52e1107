"""Persistent state under $DOTAGENT_HOME/state; every write is atomic."""
