# SPDX-License-Identifier: Apache-2.0
"""Pure core: SegFormer model, skip configurations, levels, MACs, checkpoints, masks, runtime."""
