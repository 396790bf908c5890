"""Pure policy: effective modes and enforce windows, safety brakes, the action plan (and image policies)."""
