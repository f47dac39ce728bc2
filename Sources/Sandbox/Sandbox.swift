// Module Sandbox.
