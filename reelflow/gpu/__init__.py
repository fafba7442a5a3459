"""GPU memory: what each model needs, what the device has, and the options that make it fit."""
