"""The change-detection model family: preprocessing, backbone, task and recipe."""
