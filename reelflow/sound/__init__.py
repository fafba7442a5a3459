"""Sound: speech for the voice-over, captions timed to it, and the mix under the picture."""
