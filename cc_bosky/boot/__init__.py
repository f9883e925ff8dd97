"""The boot side: started from cloud-init, watches the boot's records, makes one verdict."""
