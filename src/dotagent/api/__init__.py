"""What the read commands answer (status, history …): report objects with `to_json()`."""
