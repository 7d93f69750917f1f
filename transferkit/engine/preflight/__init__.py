"""Before a run: what a recipe's data holds (validate), what each phase will train (plan), whether
its images fit the device's memory."""
