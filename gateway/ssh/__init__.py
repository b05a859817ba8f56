"""SSH hosts as nodes: an executor that offers the runtime what a device session does."""
