"""Plugins (SPEC S4): where a `dotagent-plugin-<name>` binary is found (`resolve`), the JSON
shapes of the protocol (`protocol`), the one bounded, killable call (`client.invoke`), the run
hooks built on it (`hooks.PluginHooks`) and the reference plugins (`reference`)."""
