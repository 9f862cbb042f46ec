"""Templates and name lists of the synthetic sample, written for this project (no real
social-media text), per language."""

from __future__ import annotations

import re
from dataclasses import dataclass

# ---------------------------------------------------------------------------
# Lexicons: templates and name lists, written for this project.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    per: tuple[str, ...]
    loc: tuple[str, ...]
    org: tuple[str, ...]
    misc: tuple[str, ...]
    templates: tuple[str, ...]  # slots {PER} {LOC} {ORG} {MISC}
    ambiguous: tuple[str, ...]  # type-neutral sentences with one {AMB} slot
    fillers: tuple[str, ...]  # entity-free sentences
    tags: tuple[str, ...]  # non-entity hashtags

    def names(self, label: str) -> tuple[str, ...]:
        return getattr(self, label.lower())


AMBIGUOUS: dict[str, tuple[str, ...]] = {
    # surface: types it can take (the picture decides which one a post means)
    "Jordan": ("PER", "LOC", "ORG", "MISC"),  # the athlete / country / brand / sneakers
    "Paris": ("LOC", "PER", "ORG"),  # city / a celebrity / the football club
    "Washington": ("PER", "LOC", "ORG"),  # president / city / the NFL team
    "Mercedes": ("PER", "ORG", "MISC"),  # first name / carmaker / the car
    "Lincoln": ("PER", "LOC", "ORG"),  # president / city / car brand
    "Chelsea": ("PER", "LOC", "ORG"),  # first name / district / football club
    "Milan": ("PER", "LOC", "ORG"),  # first name / city / AC Milan
    "Amazon": ("ORG", "LOC"),  # company / river
    "Orange": ("ORG", "LOC"),  # telecom / town in Provence
    "Victoria": ("PER", "LOC"),  # first name / city or lake
    "Florence": ("PER", "LOC"),  # first name / city
    "Valencia": ("LOC", "ORG"),  # city / football club
    "Jaguar": ("ORG", "MISC"),  # carmaker / the car
    "Galaxy": ("ORG", "MISC"),  # LA Galaxy / the phone
    "Olympia": ("PER", "LOC", "MISC"),  # first name / the site / the games
}

# fmt: off
_EN = Lexicon(
    per=(
        "Emma Watson", "Taylor Swift", "Barack Obama", "Serena Williams", "Lewis Hamilton",
        "Keir Starmer", "Adele", "Marcus Rashford", "Greta Thunberg", "Kylian Mbappé",
        "Rafael Nadal", "Olivia Rodrigo", "Harry Kane", "Zendaya", "Bruce Springsteen",
    ),
    loc=(
        "London", "Manchester", "New York", "San Francisco", "Chicago", "Edinburgh", "Dublin",
        "Texas", "Scotland", "Brooklyn", "California", "Toronto", "Brighton", "Liverpool",
    ),
    org=(
        "BBC", "Manchester United", "Arsenal", "Google", "Microsoft", "NASA", "Tesla", "NHS",
        "Spotify", "Netflix", "Starbucks", "United Nations", "Greenpeace", "Oxford University",
    ),
    misc=(
        "Super Bowl", "Glastonbury", "World Cup", "Champions League", "iPhone 15", "Oscars",
        "Black Friday", "Star Wars", "Game of Thrones", "Eurovision", "PlayStation 5",
        "Olympics", "Eras Tour",
    ),
    templates=(
        "Just landed in {LOC} and the weather is already better than expected",
        "Huge respect to {PER} for speaking up today, that took guts",
        "{ORG} really needs to fix their app, it crashed three times this morning",
        "Who else is watching {MISC} tonight? I am so ready for this",
        "Met {PER} at a coffee shop in {LOC} and they were so kind to everyone",
        "{ORG} just announced new jobs in {LOC}, great news for the whole region",
        "Still can't believe {PER} won at {MISC} last night, what a performance",
        "Anyone know if {ORG} is hiring in {LOC}? Asking for a friend",
        "My weekend plans: {MISC}, pizza and absolutely no emails",
        "The new documentary about {PER} on {ORG} is worth your time, trust me",
        "Traffic in {LOC} is a nightmare today, I should have taken the train",
        "Interesting interview with {PER} about the future of {ORG} and what comes next",
        "Flying from {LOC} to {LOC} tomorrow, any tips for the airport?",
        "Tickets for {MISC} sold out in ten minutes, the queue was unreal",
    ),
    ambiguous=(
        "Can't stop thinking about {AMB} since the weekend, honestly",
        "Took this picture of {AMB} this morning and I love how it turned out",
        "Everyone keeps talking about {AMB} and now I finally get why",
        "Nothing beats {AMB} on a sunny afternoon, just look at this",
        "Found this old photo of {AMB} while cleaning up my phone",
        "So this is {AMB} up close. Not what I expected at all",
    ),
    fillers=(
        "Honestly the best part of my week.",
        "Not sure how I feel about this yet.",
        "Let me know what you think in the replies.",
        "Can we talk about how good this looks?",
        "Back to work tomorrow, sadly.",
        "This made my day, no joke.",
        "Sharing this because more people should see it.",
    ),
    tags=("#tbt", "#weekend", "#love", "#photooftheday", "#mood", "#news", "#blessed"),
)

_FR = Lexicon(
    per=(
        "Emmanuel Macron", "Kylian Mbappé", "Marion Cotillard", "Omar Sy", "Aya Nakamura",
        "Zinédine Zidane", "Thomas Pesquet", "Léa Seydoux", "Antoine Griezmann", "Angèle",
        "Stromae", "Teddy Riner", "Jean Dujardin", "Anne Hidalgo",
    ),
    loc=(
        "Marseille", "Lyon", "Bordeaux", "Toulouse", "Nantes", "Montréal", "Lille",
        "Strasbourg", "Genève", "Bruxelles", "Rennes", "Grenoble", "Besançon",
    ),
    org=(
        "SNCF", "Renault", "Air France", "Le Monde", "Olympique de Marseille", "Carrefour",
        "TotalEnergies", "Ubisoft", "Decathlon", "Radio France", "Michelin", "Danone",
        "Médecins Sans Frontières",
    ),
    misc=(
        "Tour de France", "Roland-Garros", "Fête de la Musique", "Festival de Cannes",
        "Coupe du monde", "Astérix", "Les Misérables", "Ligue 1", "Nuit Blanche", "Césars",
    ),
    templates=(
        "Je viens d'arriver à {LOC} et il fait déjà un temps magnifique",
        "Énorme respect pour {PER}, il fallait oser dire ça aujourd'hui",
        "Franchement {ORG} doit réparer son application, elle a encore planté ce matin",
        "Qui regarde {MISC} ce soir ? Je suis tellement prêt",
        "J'ai croisé {PER} dans un café à {LOC}, super sympa avec tout le monde",
        "{ORG} annonce de nouveaux emplois à {LOC}, c'est une bonne nouvelle pour la région",
        "Je n'arrive toujours pas à croire que {PER} a gagné pendant {MISC} hier soir",
        "Quelqu'un sait si {ORG} recrute à {LOC} ? C'est pour un ami",
        "Programme du week-end : {MISC}, pizza et surtout pas de mails",
        "Le documentaire sur {PER} diffusé par {ORG} vaut vraiment le coup",
        "Les bouchons à {LOC} aujourd'hui, c'est un cauchemar, j'aurais dû prendre le train",
        "Entretien passionnant avec {PER} sur ce qui attend {ORG} cette année",
        "Je prends l'avion pour {LOC} demain, vous avez des conseils pour l'aéroport ?",
        "Les billets pour {MISC} sont partis en dix minutes, la file d'attente était folle",
    ),
    ambiguous=(
        "Impossible d'arrêter de penser à {AMB} depuis le week-end, franchement",
        "J'ai pris cette photo ce matin, voilà {AMB} et j'adore le résultat",
        "Tout le monde est fan et maintenant je comprends pourquoi : {AMB} !",
        "Rien ne vaut {AMB} un dimanche après-midi, regardez-moi ça",
        "Retrouvé cette vieille photo avec {AMB} en rangeant mon téléphone",
        "Alors voilà {AMB} en vrai. Pas du tout ce que j'imaginais",
    ),
    fillers=(
        "Honnêtement le meilleur moment de ma semaine.",
        "Je ne sais pas encore quoi en penser.",
        "Dites-moi ce que vous en pensez en commentaire.",
        "On peut parler de la beauté de ce truc ?",
        "Retour au boulot demain, malheureusement.",
        "Ça a illuminé ma journée, sans blague.",
        "Je partage parce que tout le monde devrait voir ça.",
    ),
    tags=("#vacances", "#weekend", "#bonheur", "#photo", "#actu", "#dimanche", "#apéro"),
)

_DE = Lexicon(
    per=(
        "Olaf Scholz", "Angela Merkel", "Thomas Müller", "Helene Fischer", "Manuel Neuer",
        "Heidi Klum", "Joshua Kimmich", "Annalena Baerbock", "Jamal Musiala",
        "Sebastian Vettel", "Steffi Graf", "Herbert Grönemeyer", "Dirk Nowitzki",
    ),
    loc=(
        "Berlin", "München", "Hamburg", "Köln", "Frankfurt", "Wien", "Zürich", "Dresden",
        "Leipzig", "Stuttgart", "Bremen", "Salzburg", "Düsseldorf", "Hannover",
    ),
    org=(
        "Deutsche Bahn", "Bayern München", "Borussia Dortmund", "Siemens", "Volkswagen",
        "Lufthansa", "SAP", "Adidas", "ZDF", "Bundestag", "BMW", "Zalando", "Telekom",
    ),
    misc=(
        "Oktoberfest", "Tatort", "Eurovision Song Contest", "Berlinale", "DFB-Pokal",
        "Champions League", "Wacken Open Air", "Rock am Ring", "Kieler Woche", "Golf GTI",
    ),
    templates=(
        "Gerade in {LOC} gelandet und das Wetter ist schon besser als erwartet",
        "Großen Respekt an {PER}, das heute so deutlich zu sagen war mutig",
        "{ORG} muss dringend die App reparieren, die ist heute Morgen dreimal abgestürzt",
        "Wer schaut heute Abend auch {MISC}? Ich bin so bereit",
        "Habe {PER} in einem Café in {LOC} getroffen, total freundlich zu allen",
        "{ORG} schafft neue Arbeitsplätze in {LOC}, gute Nachrichten für die ganze Region",
        "Ich kann immer noch nicht glauben, dass {PER} gestern bei {MISC} gewonnen hat",
        "Weiß jemand, ob {ORG} in {LOC} Leute einstellt? Frage für einen Freund",
        "Mein Wochenende: {MISC}, Pizza und auf keinen Fall E-Mails",
        "Die neue Doku über {PER} bei {ORG} lohnt sich wirklich, glaubt mir",
        "Der Verkehr in {LOC} ist heute ein Albtraum, ich hätte den Zug nehmen sollen",
        "Spannendes Interview mit {PER} über die Zukunft von {ORG} und was jetzt kommt",
        "Morgen fliege ich von {LOC} nach {LOC}, habt ihr Tipps für den Flughafen?",
        "Die Tickets für {MISC} waren in zehn Minuten ausverkauft, die Schlange war unglaublich",
    ),
    ambiguous=(
        "Ich muss seit dem Wochenende ständig an {AMB} denken, ehrlich",
        "Dieses Foto von {AMB} habe ich heute Morgen gemacht und ich liebe es",
        "Alle reden über {AMB} und jetzt verstehe ich endlich warum",
        "Nichts geht über {AMB} an einem sonnigen Nachmittag, schaut euch das an",
        "Habe dieses alte Foto von {AMB} beim Aufräumen meines Handys gefunden",
        "Das ist also {AMB} aus der Nähe. Überhaupt nicht, was ich erwartet habe",
    ),
    fillers=(
        "Ehrlich gesagt der beste Moment meiner Woche.",
        "Ich weiß noch nicht, was ich davon halten soll.",
        "Sagt mir in den Kommentaren, was ihr denkt.",
        "Können wir kurz darüber reden, wie gut das aussieht?",
        "Morgen leider wieder zur Arbeit.",
        "Das hat mir echt den Tag gerettet.",
        "Ich teile das, weil es mehr Leute sehen sollten.",
    ),
    tags=("#urlaub", "#wochenende", "#liebe", "#fotografie", "#nachrichten", "#sonntag"),
)

_ES = Lexicon(
    per=(
        "Rafael Nadal", "Pedro Sánchez", "Rosalía", "Penélope Cruz", "Shakira", "Lionel Messi",
        "Carlos Alcaraz", "Pau Gasol", "Alejandro Sanz", "Fernando Alonso", "Bad Bunny",
        "Aitana", "Luka Modrić",
    ),
    loc=(
        "Madrid", "Barcelona", "Sevilla", "Bilbao", "Granada", "Málaga", "Buenos Aires",
        "Ciudad de México", "Bogotá", "Lima", "Salamanca", "Zaragoza", "Valladolid", "Cádiz",
    ),
    org=(
        "Real Madrid", "FC Barcelona", "Telefónica", "Iberia", "Zara", "Mercadona",
        "Banco Santander", "RTVE", "El País", "Renfe", "Inditex", "Atlético de Madrid",
        "Cruz Roja",
    ),
    misc=(
        "Mundial", "San Fermín", "Premios Goya", "Copa del Rey", "Feria de Abril", "Tomatina",
        "La casa de papel", "Día de Muertos", "Eurocopa", "Vuelta a España",
    ),
    templates=(
        "Acabo de llegar a {LOC} y el tiempo ya es mejor de lo que esperaba",
        "Todo mi respeto para {PER}, hacía falta valor para decir eso hoy",
        "{ORG} tiene que arreglar su aplicación, se ha colgado tres veces esta mañana",
        "¿Quién más está viendo {MISC} esta noche? Estoy más que listo",
        "Me encontré con {PER} en una cafetería de {LOC} y fue muy amable con todos",
        "{ORG} anuncia nuevos empleos en {LOC}, una gran noticia para toda la región",
        "Todavía no me creo que {PER} ganara en {MISC} anoche, qué actuación",
        "¿Alguien sabe si {ORG} está contratando en {LOC}? Pregunto por un amigo",
        "Mis planes para el finde: {MISC}, pizza y nada de correos",
        "El nuevo documental sobre {PER} en {ORG} merece mucho la pena, de verdad",
        "El tráfico en {LOC} hoy es una pesadilla, tendría que haber cogido el tren",
        "Entrevista muy interesante con {PER} sobre el futuro de {ORG} y lo que viene",
        "Mañana vuelo de {LOC} a {LOC}, ¿algún consejo para el aeropuerto?",
        "Las entradas para {MISC} se agotaron en diez minutos, la cola era increíble",
    ),
    ambiguous=(
        "No puedo dejar de pensar en {AMB} desde el fin de semana, de verdad",
        "Hice esta foto de {AMB} esta mañana y me encanta cómo ha quedado",
        "Todo el mundo habla de {AMB} y por fin entiendo por qué",
        "Nada como {AMB} en una tarde de sol, mirad esto",
        "He encontrado esta foto antigua de {AMB} limpiando el móvil",
        "Así que esto es {AMB} de cerca. Para nada lo que esperaba",
    ),
    fillers=(
        "Sinceramente lo mejor de mi semana.",
        "Todavía no sé qué pensar de esto.",
        "Contadme qué os parece en los comentarios.",
        "¿Podemos hablar de lo bonito que es esto?",
        "Mañana vuelta al trabajo, por desgracia.",
        "Esto me ha alegrado el día, en serio.",
        "Lo comparto porque más gente debería verlo.",
    ),
    tags=("#verano", "#findesemana", "#amor", "#fotografía", "#noticias", "#domingo"),
)

_IT = Lexicon(
    per=(
        "Giorgia Meloni", "Valentino Rossi", "Laura Pausini", "Francesco Totti", "Sophia Loren",
        "Jannik Sinner", "Roberto Benigni", "Federica Pellegrini", "Gianluigi Buffon",
    ),
    loc=("Roma", "Napoli", "Torino", "Firenze", "Venezia", "Bologna", "Palermo", "Genova"),
    org=("Juventus", "Ferrari", "Fiat", "Rai", "Trenitalia", "Barilla", "Corriere della Sera"),
    misc=("Festival di Sanremo", "Serie A", "Palio di Siena", "Coppa Italia", "Mostra del Cinema"),
    templates=(
        "Sono appena arrivato a {LOC} e il tempo è già meglio del previsto",
        "Grande rispetto per {PER}, ci voleva coraggio per dire queste cose oggi",
        "{ORG} deve sistemare la sua app, si è bloccata tre volte stamattina",
        "Chi guarda {MISC} stasera? Io sono prontissimo, non vedo l'ora",
        "Ho incontrato {PER} in un bar a {LOC}, gentilissimo con tutti",
        "{ORG} annuncia nuovi posti di lavoro a {LOC}, ottima notizia per tutta la regione",
        "I biglietti per {MISC} sono finiti in dieci minuti, la coda era incredibile",
        "Il traffico a {LOC} oggi è un incubo, avrei dovuto prendere il treno",
    ),
    ambiguous=(
        "Non riesco a smettere di pensare a {AMB} dal fine settimana, davvero",
        "Ho scattato questa foto di {AMB} stamattina e mi piace tantissimo",
        "Tutti parlano di {AMB} e adesso finalmente capisco perché",
    ),
    fillers=(
        "Sinceramente il momento migliore della mia settimana.",
        "Non so ancora cosa pensarne.",
        "Fatemi sapere cosa ne pensate nei commenti.",
        "Domani si torna al lavoro, purtroppo.",
    ),
    tags=("#estate", "#amore", "#domenica", "#notizie"),
)

_PT = Lexicon(
    per=(
        "Cristiano Ronaldo", "Anitta", "Neymar", "Gisele Bündchen", "José Saramago",
        "Fernando Pessoa", "Ivete Sangalo", "Gilberto Gil",
    ),
    loc=("Lisboa", "Porto", "São Paulo", "Rio de Janeiro", "Coimbra", "Salvador", "Recife"),
    org=("Benfica", "Sporting", "Petrobras", "TAP", "Globo", "Flamengo", "Itaú", "Natura"),
    misc=("Carnaval", "Copa do Mundo", "Rock in Rio", "Brasileirão", "Festa Junina"),
    templates=(
        "Acabei de chegar a {LOC} e o tempo já está melhor do que eu esperava",
        "Todo o respeito para {PER}, foi preciso coragem para dizer isso hoje",
        "{ORG} precisa de arrumar o aplicativo, travou três vezes esta manhã",
        "Quem mais está vendo {MISC} hoje à noite? Eu estou muito animado",
        "Encontrei {PER} numa cafeteria em {LOC}, foi muito simpático com todo mundo",
        "{ORG} anunciou novos empregos em {LOC}, uma ótima notícia para a região",
        "Os ingressos para {MISC} esgotaram em dez minutos, a fila estava inacreditável",
        "O trânsito em {LOC} hoje está um pesadelo, devia ter ido de comboio",
    ),
    ambiguous=(
        "Não consigo parar de pensar em {AMB} desde o fim de semana",
        "Tirei esta foto de {AMB} hoje de manhã e adorei o resultado",
        "Toda a gente fala de {AMB} e agora finalmente percebo porquê",
    ),
    fillers=(
        "Sinceramente o melhor momento da minha semana.",
        "Ainda não sei o que pensar disso.",
        "Digam o que vocês acham nos comentários.",
        "Amanhã volto ao trabalho, infelizmente.",
    ),
    tags=("#verão", "#amor", "#domingo", "#saudade"),
)

_NL = Lexicon(
    per=(
        "Mark Rutte", "Max Verstappen", "Virgil van Dijk", "Famke Janssen", "Arjen Robben",
        "Frenkie de Jong", "Sifan Hassan", "Armin van Buuren",
    ),
    loc=("Amsterdam", "Rotterdam", "Utrecht", "Den Haag", "Eindhoven", "Groningen", "Gent"),
    org=("Ajax", "Philips", "KLM", "Heineken", "Albert Heijn", "Feyenoord", "ING", "NOS"),
    misc=("Koningsdag", "Elfstedentocht", "Eredivisie", "Pinkpop", "Tour de France"),
    templates=(
        "Net geland in {LOC} en het weer is nu al beter dan verwacht",
        "Veel respect voor {PER}, het was moedig om dat vandaag zo te zeggen",
        "{ORG} moet echt hun app repareren, hij is vanochtend drie keer gecrasht",
        "Wie kijkt er vanavond ook naar {MISC}? Ik heb er echt zin in",
        "Ik kwam {PER} tegen in een koffiezaak in {LOC}, super aardig tegen iedereen",
        "{ORG} kondigt nieuwe banen aan in {LOC}, goed nieuws voor de hele regio",
        "De kaartjes voor {MISC} waren in tien minuten uitverkocht, de rij was ongelooflijk",
        "Het verkeer in {LOC} is vandaag een nachtmerrie, ik had de trein moeten nemen",
    ),
    ambiguous=(
        "Ik moet sinds het weekend steeds aan {AMB} denken, echt waar",
        "Deze foto van {AMB} heb ik vanochtend gemaakt en ik vind hem prachtig",
        "Iedereen heeft het over {AMB} en nu snap ik eindelijk waarom",
    ),
    fillers=(
        "Eerlijk gezegd het beste moment van mijn week.",
        "Ik weet nog niet wat ik ervan moet denken.",
        "Laat in de reacties weten wat jullie ervan vinden.",
        "Morgen helaas weer aan het werk.",
    ),
    tags=("#zomer", "#weekend", "#liefde", "#nieuws"),
)

LEXICONS: dict[str, Lexicon] = {
    "en": _EN, "fr": _FR, "de": _DE, "es": _ES, "it": _IT, "pt": _PT, "nl": _NL,
}

EMOJI: tuple[str, ...] = (
    "😀", "😂", "🔥", "❤️", "👍🏽", "🙌", "😍", "🎉", "☀️", "🤔", "😭", "✨",
    "🇫🇷", "🇩🇪", "🇪🇸", "🇬🇧", "🇺🇸", "🇮🇹",
    "👨‍👩‍👧", "👩‍💻", "🏳️‍🌈", "🧑‍🍳",
)
"""Includes VS16 sequences, skin tones, regional-indicator flags and ZWJ sequences."""

USER_HANDLES: tuple[str, ...] = (
    "@julie_92", "@max_k", "@the_real_sam", "@lena2000", "@pablo_gz", "@mimi_lou",
    "@nico_b", "@sara_trv", "@jo_h", "@kat_photo",
)
"""Non-entity @mentions (ordinary users), tagged O."""
# fmt: on

URL_CHARS = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TOKEN_RE = re.compile(r"\{(PER|LOC|ORG|MISC|AMB)\}")
