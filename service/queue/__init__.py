"""The Redis data model: keys, ids, statuses, problems, Lua scripts, the queue API, the event hub."""
