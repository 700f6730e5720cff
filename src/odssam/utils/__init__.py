"""Small helpers shared across the package (no model or data logic here)."""
