"""Runtime modules; `ALL_MODULES` is the order hooks run in."""
