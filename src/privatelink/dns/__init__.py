"""Private DNS answers served inside each virtual network (Azure's 168.63.129.16).

`resolver` is pure answer logic over a compiled table; `server` serves it from every
hub namespace and rebuilds the table when the store changes.
"""
