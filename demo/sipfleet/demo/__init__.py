"""The sipfleet demo: `sipfleet demo` brings the fleet up, plays members joining,
chatting and leaving, and shows the fleet scale out and back in (see run.py)."""
