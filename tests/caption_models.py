"""Tiny captioning models for the tests: BLIP, Florence-2 and Qwen2.5-VL built from configs with
random weights, the real transformers classes, and tokenizers/processors made here (no download).

Random weights would often emit end or padding tokens first: BLIP's output bias is raised on its
word tokens, and the byte-level tokenizers of the other two know only lower-case letters and the
space besides their special tokens, so every model writes a readable, non-empty caption through
the real generate path. Qwen2.5-VL is saved as its tokenizer, image
processor and chat template, not as a `Qwen2_5_VLProcessor`, which needs torchvision (see
sdstudio/core/captions/vlm.py).
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "red", "green", "blue", "star", "circle", "square", "on", "white", "background"]
# A chat template of Qwen2.5-VL's form (the real model ships its own).
QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
                 "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|>"
                 "<|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _favour(bias, ids: list[int]) -> None:
    import torch

    with torch.no_grad():
        bias.zero_()
        bias[ids] = 8.0


def _letter_vocab(specials: list[str]) -> dict[str, int]:
    """Special tokens, a-z and the byte-level space ("Ġ"); no merges."""
    return {t: i for i, t in enumerate(specials + list("abcdefghijklmnopqrstuvwxyz") + ["Ġ"])}


def build_blip(out: Path) -> Path:
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    cfg = BlipConfig(text_config=dict(vocab_size=len(vocab), max_position_embeddings=64, bos_token_id=2, sep_token_id=3,
                                      pad_token_id=0, **small),
                     vision_config=dict(image_size=32, patch_size=8, **small), projection_dim=32, image_text_hidden_size=32)
    model = BlipForConditionalGeneration(cfg).eval()
    _favour(model.text_decoder.cls.predictions.bias, list(range(5, len(vocab))))
    model.save_pretrained(out)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(out)
    return out


def build_florence2(out: Path) -> Path:
    import torch
    from transformers import (BartConfig, BartTokenizer, CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration,
                              Florence2Processor, Florence2VisionConfig)

    torch.manual_seed(0)
    tok = BartTokenizer(vocab=_letter_vocab(["<s>", "<pad>", "</s>", "<unk>"]), merges=[],
                        extra_special_tokens={"image_token": "<image>"})
    vision = Florence2VisionConfig(depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1],
                                   patch_prenorm=[False, True], embed_dim=[16, 32], num_heads=[1, 2], num_groups=[1, 2],
                                   window_size=2, projection_dim=32, max_temporal_embeddings=4, max_position_embeddings=16)
    text = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=128,
                      pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    model = Florence2ForConditionalGeneration(Florence2Config(vision_config=vision, text_config=text,
                                                              image_token_id=tok.image_token_id)).eval()
    model.save_pretrained(out)
    # 32 px pictures -> 4x4 patches after the two stages, plus the pooled token: 17 image tokens
    images = CLIPImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
                                do_center_crop=False, image_seq_length=17)
    Florence2Processor(image_processor=images, tokenizer=tok).save_pretrained(out)
    return out


def build_qwen25vl(out: Path) -> Path:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer, Qwen2VLImageProcessor

    torch.manual_seed(0)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]
    tok = Qwen2Tokenizer(vocab=_letter_vocab([]), merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", extra_special_tokens=specials[1:])
    tok.chat_template = QWEN_TEMPLATE
    ids = dict(zip(specials, tok.convert_tokens_to_ids(specials)))
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=512, eos_token_id=ids["<|im_end|>"], bos_token_id=ids["<|endoftext|>"],
                         pad_token_id=ids["<|endoftext|>"], rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=37, num_heads=2, out_hidden_size=32, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56).save_pretrained(out)
    return out
