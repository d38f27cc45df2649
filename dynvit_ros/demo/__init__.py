# SPDX-License-Identifier: Apache-2.0
"""Demo tooling: sample scenes, node processes and run reports (not used by the nodes)."""
