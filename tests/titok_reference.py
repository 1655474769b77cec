"""TiTok's computation written out with torch's own pieces where TiTok uses them
(``nn.MultiheadAttention`` in TiTok's sequence-first layout, ``F.layer_norm`` / ``F.group_norm`` with
their eps, the encoder's legacy reshape head, the MaskGIT block whose shortcut reads the output),
reading an artok `TiTokTokenizer`'s / `MaskGITVQGAN`'s weights by name; and the tiny configuration
and weight draw the TiTok tests share (tests/tokenizers/test_titok.py, tests/convert/test_convert_titok.py)."""

import torch
import torch.nn.functional as F

from artok.tokenizers import TiTokConfig, TiTokTokenizer


def tiny_config(**changes) -> TiTokConfig:
    """16 px, 2 px patches (8x8 grid), two 32-wide blocks with 2 heads, 5 latent tokens, a two-level pixel decoder."""
    sizes = {"image_size": 16, "patch_size": 2, "encoder_width": 32, "encoder_depth": 2, "encoder_heads": 2, "decoder_width": 64,
                 "decoder_depth": 1, "decoder_heads": 4, "num_latent_tokens": 5, "token_size": 4, "codebook_size": 16,
                 "pixel_codebook_size": 24, "pixel_base_channels": 32, "pixel_channel_multipliers": (1, 2), "pixel_res_blocks": 1,
                 "pixel_z_channels": 8}
    return TiTokConfig(**{**sizes, **changes})


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every bias and norm affine drawn (the constants 0 / 1 would hide a misplaced one), codebooks spread."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if name.endswith("bias") or ".ln_" in name or "norm" in name:
            parameter.copy_((name.endswith("weight")) + 0.2 * torch.randn(parameter.shape, generator=generator))
        elif "codebook" in name:
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
        elif parameter.dim() >= 2:  # TiTok's std 0.02 would let the biases pick one code for every image
            fan_in = parameter[0].numel() if parameter.dim() > 2 or "weight" in name else parameter.shape[-1]
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in**0.5)
    return model.eval()


def images(count: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _layer_norm(x, w, prefix):
    return F.layer_norm(x, x.shape[-1:], w[f"{prefix}.weight"], w[f"{prefix}.bias"], eps=1e-5)


def _block(x, w, prefix, heads):
    """CLIP's ResidualAttentionBlock on sequence-first ``L x B x D`` through nn.MultiheadAttention."""
    width = x.shape[-1]
    attention = torch.nn.MultiheadAttention(width, heads)
    attention.load_state_dict({k.removeprefix(f"{prefix}.attn."): v for k, v in w.items() if k.startswith(f"{prefix}.attn.")})
    h = _layer_norm(x, w, f"{prefix}.ln_1")
    x = x + attention(h, h, h, need_weights=False)[0]
    h = F.linear(_layer_norm(x, w, f"{prefix}.ln_2"), w[f"{prefix}.mlp.c_fc.weight"], w[f"{prefix}.mlp.c_fc.bias"])
    return x + F.linear(F.gelu(h), w[f"{prefix}.mlp.c_proj.weight"], w[f"{prefix}.mlp.c_proj.bias"])


def _transformer(x, w, half, depth, heads):
    x = _layer_norm(x, w, f"{half}.ln_pre").transpose(0, 1)
    for index in range(depth):
        x = _block(x, w, f"{half}.transformer.{index}", heads)
    return x.transpose(0, 1)


def reference_encoder(model: TiTokTokenizer, pixels01: torch.Tensor) -> torch.Tensor:
    c, w = model.config, model.state_dict()
    batch = pixels01.shape[0]
    x = F.conv2d(pixels01, w["encoder.patch_embed.weight"], w["encoder.patch_embed.bias"], stride=c.patch_size)
    x = x.reshape(batch, c.encoder_width, -1).permute(0, 2, 1)
    x = torch.cat([w["encoder.class_embedding"].expand(batch, 1, -1), x], dim=1) + w["encoder.positional_embedding"]
    latents = w["latent_tokens"] + w["encoder.latent_token_positional_embedding"]
    x = torch.cat([x, latents.expand(batch, -1, -1)], dim=1)
    x = _transformer(x, w, "encoder", c.encoder_depth, c.encoder_heads)
    x = _layer_norm(x[:, 1 + c.num_patches:], w, "encoder.ln_post")
    x = x.reshape(batch, c.encoder_width, c.num_latent_tokens, 1)  # TiTok's legacy reshape
    x = F.conv2d(x, w["encoder.conv_out.weight"], w["encoder.conv_out.bias"])
    return x.reshape(batch, c.token_size, 1, c.num_latent_tokens)


def reference_ids(model: TiTokTokenizer, latents: torch.Tensor) -> torch.Tensor:
    """TiTok's VectorQuantizer: l2-normalised features and codes, squared-distance argmin."""
    z = F.normalize(latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]), dim=-1)
    codes = F.normalize(model.state_dict()["quantizer.codebook"], dim=-1)
    distance = z.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * z @ codes.t()
    return distance.argmin(1).reshape(latents.shape[0], -1)


def reference_decoder(model: TiTokTokenizer, ids: torch.Tensor) -> torch.Tensor:
    c, w = model.config, model.state_dict()
    batch = ids.shape[0]
    z = F.normalize(w["quantizer.codebook"][ids], dim=-1)  # B x K x C, TiTok's get_codebook_entry
    x = F.linear(z, w["decoder.decoder_embed.weight"], w["decoder.decoder_embed.bias"])
    x = x + w["decoder.latent_token_positional_embedding"]
    masks = w["decoder.mask_token"].repeat(batch, c.num_patches, 1)
    masks = torch.cat([w["decoder.class_embedding"].expand(batch, 1, -1), masks], dim=1) + w["decoder.positional_embedding"]
    x = _transformer(torch.cat([masks, x], dim=1), w, "decoder", c.decoder_depth, c.decoder_heads)
    x = _layer_norm(x[:, 1:1 + c.num_patches], w, "decoder.ln_post")
    x = x.permute(0, 2, 1).reshape(batch, c.decoder_width, c.grid, c.grid)
    x = F.conv2d(torch.tanh(F.conv2d(x, w["decoder.ffn.0.weight"], w["decoder.ffn.0.bias"])),
                 w["decoder.ffn.2.weight"], w["decoder.ffn.2.bias"])
    code_map = torch.einsum("nchw,cd->ndhw", x.softmax(1), w["pixel_codebook"])
    return reference_pixel_decoder(w, "pixel_decoder", code_map, len(c.pixel_channel_multipliers), c.pixel_res_blocks)


def _group_norm(x, w, prefix):
    return F.group_norm(x, 32, w[f"{prefix}.weight"], w[f"{prefix}.bias"], eps=1e-6)


def _resnet(x, w, prefix):
    h = F.conv2d(F.silu(_group_norm(x, w, f"{prefix}.norm1")), w[f"{prefix}.conv1.weight"], padding=1)
    h = F.conv2d(F.silu(_group_norm(h, w, f"{prefix}.norm2")), w[f"{prefix}.conv2.weight"], padding=1)
    if f"{prefix}.nin_shortcut.weight" in w:
        return h + F.conv2d(h, w[f"{prefix}.nin_shortcut.weight"])  # MaskGIT's shortcut reads the output
    return h + x


def reference_pixel_decoder(w, prefix, z, levels, blocks):
    x = F.conv2d(z, w[f"{prefix}.conv_in.weight"], w[f"{prefix}.conv_in.bias"], padding=1)
    for j in range(blocks):
        x = _resnet(x, w, f"{prefix}.mid.{j}")
    for level in reversed(range(levels)):
        for j in range(blocks):
            x = _resnet(x, w, f"{prefix}.up.{level}.block.{j}")
        if level:
            x = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w[f"{prefix}.up.{level}.upsample_conv.weight"],
                         w[f"{prefix}.up.{level}.upsample_conv.bias"], padding=1)
    x = F.silu(_group_norm(x, w, f"{prefix}.norm_out"))
    return F.conv2d(x, w[f"{prefix}.conv_out.weight"], w[f"{prefix}.conv_out.bias"], padding=1)


def reference_pixel_encoder(w, x, levels, blocks):
    x = F.conv2d(x, w["encoder.conv_in.weight"], padding=1)
    for level in range(levels):
        for j in range(blocks):
            x = _resnet(x, w, f"encoder.down.{level}.block.{j}")
        if level < levels - 1:
            x = F.avg_pool2d(x, 2, 2)
    for j in range(blocks):
        x = _resnet(x, w, f"encoder.mid.{j}")
    x = F.silu(_group_norm(x, w, "encoder.norm_out"))
    return F.conv2d(x, w["encoder.conv_out.weight"], w["encoder.conv_out.bias"])
