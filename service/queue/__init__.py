"""The Redis data model: keys, ids, statuses, problems, Lua scripts, queue API, event hub."""
