from harness._open_clip_hook import install as _register_open_clip_configs

_register_open_clip_configs()  # open_clip.create_model("tiny-clip") works once harness is imported
