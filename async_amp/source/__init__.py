"""Where events come from: the Export API (its HTTP client and the streaming
ZIP core) and Amplitude's cloud export."""
