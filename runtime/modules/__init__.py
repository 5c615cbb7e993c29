"""Runtime modules, one file each; `runtime.registry.MODULES` is the order their hooks run in."""
