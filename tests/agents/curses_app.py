"""A fullscreen curses program: draws a box with a marker text, then waits for input."""

from __future__ import annotations

import curses


def main(screen: curses.window) -> None:
    screen.clear()
    screen.border()
    screen.addstr(3, 5, "CURSES-SCREEN-OK")
    screen.addstr(4, 5, "second line of the screen")
    screen.refresh()
    screen.getch()


if __name__ == "__main__":
    curses.wrapper(main)
