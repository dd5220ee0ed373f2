"""The stage layer: one thin module per DVC stage (read inputs -> call datakit -> write outputs)."""
