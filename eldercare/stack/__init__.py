"""Starting the platform: embedded services where no URL is configured, and the supervisor."""
