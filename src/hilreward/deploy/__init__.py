"""hilreward.deploy"""
