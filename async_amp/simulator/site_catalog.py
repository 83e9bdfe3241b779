"""The simulated project's site and audience, as data: its pages, blog posts, plans, buttons,
countries (with cities, time zones, languages), referrers, companies and devices, each with the
weight ``site_model`` draws it by. Edit here to change what the simulated events say."""

from __future__ import annotations

from typing import Final

__all__ = [
    "BLOG_POSTS",
    "BUTTONS",
    "COMPANIES",
    "COUNTRIES",
    "DEVICES",
    "LIBRARY",
    "PAGES",
    "PLANS",
    "REFERRERS",
    "SITE",
]

SITE: Final = "https://www.shipfast.dev"

# (path, title, weight): weights roughly Zipf, the home page and pricing lead.
PAGES: Final[tuple[tuple[str, str, float], ...]] = (
    ("/", "ShipFast - Ship software faster", 30.0),
    ("/pricing", "Pricing - ShipFast", 14.0),
    ("/features", "Features - ShipFast", 9.0),
    ("/docs", "Documentation - ShipFast", 8.0),
    ("/docs/getting-started", "Getting started - ShipFast Docs", 6.0),
    ("/features/deploy-previews", "Deploy previews - ShipFast", 4.5),
    ("/customers", "Customers - ShipFast", 4.0),
    ("/docs/api", "API reference - ShipFast Docs", 3.5),
    ("/integrations", "Integrations - ShipFast", 3.2),
    ("/signup", "Sign up - ShipFast", 3.0),
    ("/login", "Log in - ShipFast", 2.8),
    ("/blog", "Blog - ShipFast", 2.6),
    ("/demo", "Book a demo - ShipFast", 2.2),
    ("/features/feature-flags", "Feature flags - ShipFast", 2.0),
    ("/integrations/github", "GitHub integration - ShipFast", 1.8),
    ("/integrations/azure", "Azure integration - ShipFast", 1.5),
    ("/integrations/slack", "Slack integration - ShipFast", 1.3),
    ("/security", "Security - ShipFast", 1.2),
    ("/changelog", "Changelog - ShipFast", 1.1),
    ("/about", "About us - ShipFast", 1.0),
    ("/careers", "Careers - ShipFast", 0.9),
    ("/compare/jenkins", "ShipFast vs Jenkins", 0.8),
    ("/compare/github-actions", "ShipFast vs GitHub Actions", 0.7),
    ("/contact", "Contact - ShipFast", 0.6),
    ("/legal/privacy", "Privacy policy - ShipFast", 0.3),
    ("/legal/terms", "Terms of service - ShipFast", 0.2),
)

# (slug, title, category, author, minutes to read); popularity is Zipf by position.
BLOG_POSTS: Final[tuple[tuple[str, str, str, str, int], ...]] = (
    ("how-we-ship-fast", "How we ship fast: 40 deploys a day", "Engineering", "Maya Chen", 9),
    ("postgres-to-1b-rows", "Scaling Postgres to 1B rows", "Engineering", "Tomás Alves", 14),
    ("feature-flags-guide", "The complete guide to feature flags", "Guides", "Priya Nair", 12),
    ("ci-cost-cutting", "We cut our CI bill by 70%", "Engineering", "Jonas Weber", 7),
    ("monorepo-lessons", "Five years of a monorepo: lessons", "Engineering", "Maya Chen", 11),
    ("launch-week-recap", "Launch week recap", "Product", "Sam Okafor", 5),
    ("deploy-previews-ga", "Deploy previews are generally available", "Product", "Sam Okafor", 4),
    ("trunk-based-development", "Trunk-based development in practice", "Guides", "Lena Berg", 10),
    ("incident-postmortem-march", "Postmortem: the March outage", "Engineering", "Jonas Weber", 8),
    ("dora-metrics", "DORA metrics without the dashboards", "Guides", "Priya Nair", 9),
    ("hiring-platform-engineers", "How we hire platform engineers", "Company", "Ana Ruiz", 6),
    ("series-b", "We raised our Series B", "Company", "Ana Ruiz", 3),
    ("rust-build-cache", "A build cache in Rust", "Engineering", "Tomás Alves", 13),
    ("azure-integration", "Deploying to Azure with ShipFast", "Guides", "Lena Berg", 8),
    ("remote-team-rituals", "Rituals of a remote team", "Company", "Maya Chen", 5),
    ("flaky-tests", "Killing flaky tests for good", "Engineering", "Jonas Weber", 10),
    ("pricing-change-2026", "Simpler pricing for 2026", "Product", "Sam Okafor", 4),
    ("zero-downtime-migrations", "Zero-downtime schema migrations", "Guides", "Priya Nair", 15),
    ("open-source-sdk", "Our SDK is now open source", "Product", "Lena Berg", 4),
    ("on-call-handbook", "Our on-call handbook", "Company", "Ana Ruiz", 7),
)

PLANS: Final = (("free", 6.0), ("team", 3.0), ("business", 1.0))
BUTTONS: Final = (
    ("Start free trial", 5.0),
    ("Book a demo", 2.0),
    ("Read the docs", 2.0),
    ("Contact sales", 1.0),
    ("Copy code", 1.5),
)

# (country, utc offset hours, weight, language, ip first octets, ((city, region, dma), ...))
COUNTRIES: Final[
    tuple[tuple[str, int, float, str, str, tuple[tuple[str, str, str | None], ...]], ...]
] = (
    (
        "United States",
        -6,
        34.0,
        "English",
        "73.",
        (
            ("San Francisco", "California", "San Francisco-Oakland-San Jose, CA"),
            ("New York", "New York", "New York, NY"),
            ("Seattle", "Washington", "Seattle-Tacoma, WA"),
            ("Austin", "Texas", "Austin, TX"),
            ("Chicago", "Illinois", "Chicago, IL"),
            ("Boston", "Massachusetts", "Boston, MA-Manchester, NH"),
            ("Denver", "Colorado", "Denver, CO"),
        ),
    ),
    (
        "United Kingdom",
        0,
        9.0,
        "English",
        "81.",
        (
            ("London", "England", None),
            ("Manchester", "England", None),
            ("Edinburgh", "Scotland", None),
        ),
    ),
    (
        "Germany",
        1,
        8.0,
        "German",
        "84.",
        (
            ("Berlin", "Land Berlin", None),
            ("München", "Bavaria", None),
            ("Hamburg", "Hamburg", None),
        ),
    ),
    (
        "India",
        5,
        8.0,
        "English",
        "103.",
        (
            ("Bengaluru", "Karnataka", None),
            ("Mumbai", "Maharashtra", None),
            ("Pune", "Maharashtra", None),
        ),
    ),
    (
        "France",
        1,
        4.5,
        "French",
        "90.",
        (("Paris", "Île-de-France", None), ("Lyon", "Auvergne-Rhône-Alpes", None)),
    ),
    (
        "Canada",
        -5,
        4.5,
        "English",
        "99.",
        (("Toronto", "Ontario", None), ("Vancouver", "British Columbia", None)),
    ),
    (
        "Netherlands",
        1,
        3.5,
        "Dutch",
        "145.",
        (("Amsterdam", "North Holland", None), ("Utrecht", "Utrecht", None)),
    ),
    (
        "Brazil",
        -3,
        3.5,
        "Portuguese",
        "177.",
        (("São Paulo", "São Paulo", None), ("Florianópolis", "Santa Catarina", None)),
    ),
    (
        "Poland",
        1,
        2.5,
        "Polish",
        "83.",
        (("Warsaw", "Mazovia", None), ("Kraków", "Lesser Poland", None)),
    ),
    ("Sweden", 1, 2.0, "Swedish", "78.", (("Stockholm", "Stockholm", None),)),
    (
        "Spain",
        1,
        2.0,
        "Spanish",
        "88.",
        (("Madrid", "Madrid", None), ("Barcelona", "Catalonia", None)),
    ),
    (
        "Australia",
        10,
        2.5,
        "English",
        "101.",
        (("Sydney", "New South Wales", None), ("Melbourne", "Victoria", None)),
    ),
    ("Japan", 9, 2.0, "Japanese", "126.", (("Tokyo", "Tokyo", None), ("Osaka", "Osaka", None))),
    ("Israel", 2, 1.5, "Hebrew", "79.", (("Tel Aviv", "Tel Aviv", None),)),
    ("Singapore", 8, 1.5, "English", "175.", (("Singapore", "Central Singapore", None),)),
    ("Nigeria", 1, 1.0, "English", "102.", (("Lagos", "Lagos", None),)),
    ("Ukraine", 2, 1.5, "Ukrainian", "93.", (("Kyiv", "Kyiv City", None), ("Lviv", "Lviv", None))),
)

# (referrer url or None, referring domain or None, utm source, utm medium, weight)
REFERRERS: Final[tuple[tuple[str | None, str | None, str | None, str | None, float], ...]] = (
    ("https://www.google.com/", "www.google.com", None, None, 34.0),
    (None, None, None, None, 24.0),  # direct
    ("https://www.linkedin.com/", "www.linkedin.com", "linkedin", "social", 9.0),
    ("https://news.ycombinator.com/", "news.ycombinator.com", None, None, 6.0),
    ("https://t.co/", "t.co", "twitter", "social", 4.0),
    ("https://www.bing.com/", "www.bing.com", None, None, 4.0),
    ("https://duckduckgo.com/", "duckduckgo.com", None, None, 3.0),
    ("https://www.reddit.com/", "www.reddit.com", None, None, 3.0),
    ("https://github.com/", "github.com", None, None, 3.0),
    (None, None, "newsletter", "email", 4.0),
    ("https://chatgpt.com/", "chatgpt.com", "chatgpt.com", None, 3.0),
    ("https://www.google.com/", "www.google.com", "google", "cpc", 2.0),
    ("https://dev.to/", "dev.to", None, None, 1.0),
)

COMPANIES: Final[tuple[tuple[str, str], ...]] = (
    ("acme.com", "Acme Corp"),
    ("globex.io", "Globex"),
    ("initech.com", "Initech"),
    ("hooli.xyz", "Hooli"),
    ("contoso.com", "Contoso"),
    ("fabrikam.com", "Fabrikam"),
    ("northwind.io", "Northwind Traders"),
    ("piedpiper.com", "Pied Piper"),
    ("umbrella-corp.com", "Umbrella Corporation"),
    ("stark-industries.com", "Stark Industries"),
    ("wayne-enterprises.com", "Wayne Enterprises"),
    ("tailspin.dev", "Tailspin Toys"),
    ("adventure-works.com", "Adventure Works"),
    ("litware.io", "Litware"),
    ("proseware.net", "Proseware"),
    ("wingtiptoys.com", "Wingtip Toys"),
    ("soylent.co", "Soylent"),
    ("cyberdyne.ai", "Cyberdyne Systems"),
    ("vandelay.com", "Vandelay Industries"),
    ("massive-dynamic.com", "Massive Dynamic"),
    ("tyrell.tech", "Tyrell"),
    ("oscorp.dev", "Oscorp"),
    ("blue-sun.co", "Blue Sun"),
    ("monsters-inc.com", "Monsters, Inc."),
)

# (os_name = browser, os_version, device_family, device_type, device_model, weight)
DEVICES: Final[tuple[tuple[str, str, str, str, str | None, float], ...]] = (
    ("Chrome", "131", "Mac OS X", "Apple Mac", "Mac OS", 22.0),
    ("Chrome", "131", "Windows", "Windows", "Windows", 20.0),
    ("Safari", "18.1", "Mac OS X", "Apple Mac", "Mac OS", 9.0),
    ("Mobile Safari", "18.1", "iOS", "Apple iPhone", "iOS", 10.0),
    ("Chrome Mobile", "131", "Android", "Android", "Android", 8.0),
    ("Firefox", "133", "Windows", "Windows", "Windows", 5.0),
    ("Firefox", "133", "Linux", "Linux", "Linux", 4.0),
    ("Edge", "131", "Windows", "Windows", "Windows", 6.0),
    ("Chrome", "131", "Linux", "Linux", "Linux", 5.0),
    ("Chrome", "130", "Chrome OS", "Chromebook", None, 1.0),
)

LIBRARY: Final = "amplitude-ts/2.11.8"
