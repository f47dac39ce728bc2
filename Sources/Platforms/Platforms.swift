// Module Platforms.
