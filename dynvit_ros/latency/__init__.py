# SPDX-License-Identifier: Apache-2.0
"""Latency-model plugins: the interface and loader, host-profiled, analytical accelerator."""
