# SPDX-License-Identifier: Apache-2.0
"""Training, evaluation and level calibration on CamVid (not used by the nodes)."""
