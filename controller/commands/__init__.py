"""The ``mfrm`` command line: one module per command family, each parsing its flags into settings and
calling the libraries (``controller.runner``, ``controller.training``, ``controller.daemon``,
``workload.replayer``) through ``controller.assemble``."""
