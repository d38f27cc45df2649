# SPDX-License-Identifier: Apache-2.0
"""rosbag2 reading, writing and replay."""
