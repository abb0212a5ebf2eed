"""Test-only model configs for the training tests (a module with a unique name, so other test
folders' conftest files cannot shadow it)."""

# A micro CLIP so a test run takes a second or two. TEST ONLY: runs using it go through
# research_overrides={"model": MICRO, ...} and are marked as research runs.
MICRO = "test-micro-clip"
MICRO_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
# Stand-in for harness/model_configs/tiny-clip.json, used only while harness.models does not provide it.
TINY_STANDIN = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 96, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 96, "heads": 3, "layers": 2},
}
