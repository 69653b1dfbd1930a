"""eldercare, the top layer: IoT monitoring and emergency response for older people living at
home. It wires the services together (the `eldercare` command, the supervisor in `services`,
the embedded stack in `stack/`, the benches in `bench/`); no service package imports it. The
ground every package stands on is `foundation/`."""

__version__ = "0.1.0"
