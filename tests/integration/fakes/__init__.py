# SPDX-License-Identifier: LGPL-2.1-or-later
"""Loopback fakes of the services kirod talks to (Kiro chat, event stream encoding)."""
