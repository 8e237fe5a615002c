"""`hubbub tui`: the full-screen client on the same library as the line-mode client.

`app` (the Textual application and its configuration), the screens `login_screens`
(log in, create an account), `password_screen` (the `!password` dialog) and
`chat_screen` (the chat), `widgets` (sidebar, message pane, status bar, input), `model`
(the sans-I/O state: conversations, unread counts, ordering), `session` (network
side), `text` (safe rendering of network strings).
"""

from .app import HubbubApp, TuiConfig, run_tui

__all__ = ["HubbubApp", "TuiConfig", "run_tui"]
