"""The ffmpeg binary, streaming frame I/O and probing, with one error class (FFmpegError)."""
