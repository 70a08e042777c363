"""The board wire: how the controller talks to a chair's motor/IO board (docs/board-protocol.md).

Four siblings, each one idea:

- `protocol`: the frame codec (frames, CRC, messages, the total decoder). Standard library only.
- `transport`: raw byte ports: a serial device, a pty or a TCP socket, raw and non-blocking.
- `mailbox`: the core's hardware seam for a board (`LinkHardware`), lock-free between the
  real-time tick and one I/O thread (compiled).
- `link`: the controller's link driver (`open_board_link`): the I/O thread on a port, SETPOINTs
  out, STATUSes in, through the mailbox.

The board emulator (`sim.board`) speaks the same protocol over the same transport.
"""
