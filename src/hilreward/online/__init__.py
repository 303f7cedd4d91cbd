"""hilreward.online"""
