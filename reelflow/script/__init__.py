"""The script stage: brief -> drafts -> calibration -> camera language -> revision rounds."""
