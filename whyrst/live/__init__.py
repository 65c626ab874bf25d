"""Live sources: the kernel's reset tracepoints through tracefs, RSTs on the wire, socket owners, and the
``whyrst watch`` front end."""
