"""Where and how a run executes: the device and precision, several processes, clean stops on
signals."""
