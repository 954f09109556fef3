"""The shipped Accelerate configs for SDXL full fine-tuning on several GPUs (README, "Several GPUs")
are files `accelerate launch --config_file` reads: DeepSpeed ZeRO stage 2, and FSDP sharding
gradients and optimizer states. Only that they load is tested here: running them needs GPUs."""

from __future__ import annotations

from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from sdstudio.core.paths import configs_dir


def test_deepspeed_zero2_and_fsdp_configs_load_in_accelerate() -> None:
    zero2 = load_config_from_file(str(configs_dir() / "accelerate" / "deepspeed-zero2.yaml"))
    assert zero2.distributed_type == DistributedType.DEEPSPEED and zero2.deepspeed_config["zero_stage"] == 2
    assert not zero2.use_cpu and zero2.mixed_precision == "bf16"
    fsdp = load_config_from_file(str(configs_dir() / "accelerate" / "fsdp.yaml"))
    assert fsdp.distributed_type == DistributedType.FSDP and fsdp.fsdp_config["fsdp_version"] == 2
    assert fsdp.fsdp_config["fsdp_reshard_after_forward"] is False  # ZeRO-2-like: weights whole on each GPU
    wrapped = fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(",")
    import diffusers.models.attention as attention
    import diffusers.models.resnet as resnet

    assert hasattr(attention, wrapped[0]) and hasattr(resnet, wrapped[1])  # diffusers' own block classes
