# SPDX-License-Identifier: Apache-2.0
"""The ROS 2 layer: nodes, parameters, QoS, diagnostics, image conversion."""
